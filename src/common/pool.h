// lazyfeat's one thread pool for its CPU kernels (models/fc_fused.cpp, models/cnn_fused.cpp):
// a parallel region runs the tasks 0 .. k-1, each once, on the calling thread and the pool's
// persistent workers, and returns when all are done. The work is cut into fixed tasks by the
// caller (blocks of rows, chunks of columns), never by the thread count, so the numbers do not
// depend on how many threads run them (tests: FcFused / CnnFused ...OneOrTwoThreads).
//  - Threads: LAZYFEAT_THREADS (1 = the caller alone), default 2 (the caller and one worker: on
//    the 2 shared cores these kernels were tuned on, more threads than cores only wait for time
//    slices). Read once, at the first region.
//  - Tasks are claimed through one atomic word (generation << 32 | next task), so a worker late
//    from an earlier region never claims a task of a later one. Workers spin ~100 us for the
//    next region, then sleep on a condition variable.
//  - A region started while another thread holds the pool runs on its caller alone (thread 0),
//    and a region inside a task likewise: no deadlock, the same numbers.
//  - aten_region (the callers pass it where the BLAS's threads are not lazyfeat's to set: MKL
//    inside PyTorch's LibTorch, models/blas.h) runs the region as an ATen parallel region of as
//    many threads instead, inside which ATen and MKL start no threads of their own.
// Deliberately not: work stealing, priorities, futures; the BLAS's own threads (callers keep it
// single-threaded inside a region: common/blas_threads.h).
#pragma once
#include <cstdint>
#include <functional>

namespace lf {

// fn(task, thread): task in [0, k), thread in [0, pool_threads()).
void parallel_tasks(int64_t k, const std::function<void(int64_t task, int thread)>& fn, bool aten_region = false);
// The threads a region may use (the caller included): per-thread buffers are sized by it.
int pool_threads();

}  // namespace lf
