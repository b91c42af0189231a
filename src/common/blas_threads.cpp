// OpenBLAS's thread control, looked up once (see blas_threads.h).
#include "common/blas_threads.h"

#include <dlfcn.h>

namespace lf {
namespace {

struct OpenBlas {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
  OpenBlas() {
    set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (!set || !get) set = nullptr, get = nullptr;
  }
};
const OpenBlas& openblas() {
  static const OpenBlas b;
  return b;
}

}  // namespace

int openblas_threads() { return openblas().get ? openblas().get() : 0; }

OpenBlasThreads::OpenBlasThreads(int threads, bool active) {
  if (active && openblas().get && (prev_ = openblas().get()) != threads) openblas().set(threads);
  else prev_ = 0;
}
OpenBlasThreads::~OpenBlasThreads() {
  if (prev_ > 0) openblas().set(prev_);
}

}  // namespace lf
