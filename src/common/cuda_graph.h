// Device work recorded once and replayed: a CUDA graph of a loop body of fixed shapes, for loops
// whose kernel launches cost more than their arithmetic (experiment/engine.cpp: a round of the
// paper's step rule is 150 to 250 kernels, 5 to 10 us of launch each, on [K', n, h] activations
// that take microseconds at small K). A replay launches the recorded kernels with their recorded
// arguments, so the body must read and write tensors at fixed addresses, make no host
// synchronisation and no copy from host memory; its temporaries live in the graph's private
// memory pool (LibTorch's at::cuda::CUDAGraph) for the graph's life.
// Compiled with CUDA LibTorch only (LAZYFEAT_WITH_CUDA); elsewhere wanted() is false and the
// other calls throw.
// Deliberately not: graphs sharing a pool, host work in a graph, conditional nodes (a round's
// decisions stay masks: experiment/engine.cpp).
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace lf {

class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Whether graphs are used on device d: a cuda device with CUDA LibTorch, unless the
  // environment has LAZYFEAT_CUDA_GRAPHS=0 (tests and benchmarks compare the two).
  static bool wanted(const c10::Device& d);

  // The scope of capture and replay: the graph's own stream (a capture needs one other than the
  // default) is the current stream, after the work queued on the stream before and ahead of the
  // work queued on it after (events, no host synchronisation). One scope at a time.
  class OnStream {
   public:
    explicit OnStream(CudaGraph& g);
    ~OnStream();
    OnStream(const OnStream&) = delete;
    OnStream& operator=(const OnStream&) = delete;

   private:
    CudaGraph& g_;
  };

  // In an OnStream scope: records the device work of fn (running none of it) in place of what
  // was recorded before.
  void capture(const std::function<void()>& fn);
  // In an OnStream scope: launches the recorded work.
  void replay();
  bool captured() const;
  // Drops the recorded work and its memory pool.
  void reset();
  // Replays since the process started, over every graph (tests: that graphs ran).
  static int64_t replays();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lf
