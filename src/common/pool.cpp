// The thread pool of pool.h. The claiming scheme and the spin-then-sleep wait are those the FC
// kernels used with their own pool of one worker (docs/benchmarks.md "train-step"), for any
// number of workers.
#include "common/pool.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lf {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

int configured_threads() {
  const char* e = std::getenv("LAZYFEAT_THREADS");
  const int t = e && *e ? std::atoi(e) : 2;
  return std::clamp(t, 1, 256);
}

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& w : workers_) w.join();
  }
  int threads() const { return threads_; }

  void run(int64_t k, const std::function<void(int64_t, int)>& fn) {
    call_ = &fn;
    tasks_.store(k, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & 0xffffffffu;
    if (gen_ == 0) gen_ = 1;
    word_.store(gen_ << 32, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> g(mu_);
      cv_.notify_all();
    }
    work(gen_, 0);
    // Wait for the workers' last tasks: spin briefly, then yield (one may be waiting for this core).
    for (int spin = 0; done_.load(std::memory_order_acquire) < k; ++spin) {
      if (spin < 4096) cpu_relax();
      else std::this_thread::yield();
    }
    word_.store(gen_ << 32 | 0xffffffffu, std::memory_order_seq_cst);  // closed: no task index left
    call_ = nullptr;
  }

 private:
  void work(uint64_t gen, int t) {
    for (;;) {
      uint64_t w = word_.load(std::memory_order_acquire);
      if ((w >> 32) != gen || int64_t(w & 0xffffffffu) >= tasks_.load(std::memory_order_relaxed)) return;
      if (!word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
      (*call_)(int64_t(w & 0xffffffffu), t);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  void loop(int t) {
    uint64_t seen = 0;
    for (;;) {
      auto t0 = std::chrono::steady_clock::now();
      uint64_t g = word_.load(std::memory_order_acquire) >> 32;
      for (int spin = 0; g == seen; ++spin) {
        cpu_relax();
        if ((spin & 255) == 255 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(100)) break;
        g = word_.load(std::memory_order_acquire) >> 32;
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        sleeping_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lk, [&] { return stop_ || (word_.load(std::memory_order_seq_cst) >> 32) != seen; });
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
        if (stop_) return;
        g = word_.load(std::memory_order_acquire) >> 32;
      }
      seen = g;
      work(g, t);
    }
  }
  int threads_;
  const std::function<void(int64_t, int)>* call_ = nullptr;
  std::atomic<int64_t> tasks_{0};
  uint64_t gen_ = 0;
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleeping_{0};
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
};

std::mutex g_region;               // one region at a time on the pool
thread_local bool t_in_region = false;  // this thread runs a region's task, or started one

Pool& pool() {
  static Pool* p = new Pool(configured_threads());  // never destroyed: workers outlive static teardown
  return *p;
}

}  // namespace

int pool_threads() { return pool().threads(); }

void parallel_tasks(int64_t k, const std::function<void(int64_t, int)>& fn, bool aten_region) {
  const int T = pool_threads();
  if (k <= 1 || T <= 1 || t_in_region) {
    for (int64_t i = 0; i < k; ++i) fn(i, 0);
    return;
  }
  if (aten_region) {
    std::atomic<int64_t> next{0};
    at::parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        for (int64_t i; (i = next.fetch_add(1)) < k;) fn(i, int(t));
    });
    return;
  }
  std::unique_lock<std::mutex> lk(g_region, std::try_to_lock);
  if (!lk.owns_lock()) {  // another thread holds the pool: this region on its caller alone
    for (int64_t i = 0; i < k; ++i) fn(i, 0);
    return;
  }
  struct Flag {  // reset even if fn throws on this thread
    Flag() { t_in_region = true; }
    ~Flag() { t_in_region = false; }
  } flag;
  pool().run(k, fn);
}

}  // namespace lf
