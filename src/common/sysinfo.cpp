#include "common/sysinfo.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/api/include/torch/version.h>
#include <dlfcn.h>
#include <unistd.h>

#include <fstream>

namespace lf {

std::string loaded_blas_library() {
  // Force the BLAS to be loaded and used.
  auto a = at::ones({64, 64}, at::kDouble);
  (void)at::mm(a, a).sum().item<double>();
  std::ifstream maps("/proc/self/maps");
  std::string line, found;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    if (path.find("openblas") != std::string::npos) return path;
    if (path.find("libblas") != std::string::npos || path.find("libmkl") != std::string::npos)
      found = path;
  }
  if (found.empty()) {  // a BLAS linked into another library (PyTorch's libtorch_cpu bundles MKL)
    Dl_info info;
    void* dgemm = dlsym(RTLD_DEFAULT, "dgemm_");
    if (dgemm && dladdr(dgemm, &info) && info.dli_fname) {
      found = std::string(info.dli_fname) + " (dgemm_";
      if (dlsym(RTLD_DEFAULT, "mkl_set_num_threads_local")) found += ", MKL";
      found += ")";
    }
  }
  return found;
}

std::string blas_core() {
  static const std::string core = [] {
    using Text = char* (*)();
    auto corename = reinterpret_cast<Text>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    auto config = reinterpret_cast<Text>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
    if (!corename) return std::string();
    std::string version = "OpenBLAS";
    if (config) {  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": its first two words
      std::string c = config();
      const size_t sp = c.find(' ', c.find(' ') + 1);
      version = c.substr(0, sp);
    }
    return version + " " + corename();
  }();
  return core;
}

nlohmann::json build_info() {
  nlohmann::json j;
  j["version"] = LAZYFEAT_VERSION;
  j["libtorch"] = TORCH_VERSION;
  std::string blas = loaded_blas_library();
  char real[4096];
  ssize_t n = blas.empty() || blas.find(" (") != std::string::npos ? -1 : readlink(blas.c_str(), real, sizeof real - 1);
  if (n > 0) {
    real[n] = 0;
    blas += std::string(" -> ") + real;
  }
  j["blas"] = blas;
  j["blas_is_openblas"] = blas.find("openblas") != std::string::npos;
  j["blas_core"] = blas_core();
  j["intra_op_threads"] = at::get_num_threads();
#ifdef LAZYFEAT_WITH_MPI
  j["mpi"] = true;
#else
  j["mpi"] = false;
#endif
  j["cuda_available"] = at::hasCUDA();
  return j;
}

}  // namespace lf
