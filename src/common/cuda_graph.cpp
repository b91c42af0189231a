#include "common/cuda_graph.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#ifdef LAZYFEAT_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#endif

namespace lf {
namespace {
std::atomic<int64_t> g_replays{0};
}

#ifdef LAZYFEAT_WITH_CUDA

struct CudaGraph::Impl {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  std::optional<c10::cuda::CUDAStream> stream, previous;  // the graph's; the scope's caller's
};

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;

bool CudaGraph::wanted(const c10::Device& d) {
  const char* e = std::getenv("LAZYFEAT_CUDA_GRAPHS");
  return d.is_cuda() && !(e && std::string(e) == "0");
}

CudaGraph::OnStream::OnStream(CudaGraph& g) : g_(g) {
  Impl& m = *g_.impl_;
  if (m.previous) throw std::logic_error("CudaGraph: scopes do not nest");
  m.previous = c10::cuda::getCurrentCUDAStream();
  if (!m.stream) m.stream = c10::cuda::getStreamFromPool();
  at::cuda::CUDAEvent before;  // the graph's stream waits for the work queued so far
  before.record(*m.previous);
  before.block(*m.stream);
  c10::cuda::setCurrentCUDAStream(*m.stream);
}

CudaGraph::OnStream::~OnStream() {
  Impl& m = *g_.impl_;
  at::cuda::CUDAEvent after;  // the caller's stream waits for the graph's work
  after.record(*m.stream);
  after.block(*m.previous);
  c10::cuda::setCurrentCUDAStream(*m.previous);
  m.previous.reset();
}

void CudaGraph::capture(const std::function<void()>& fn) {
  if (!impl_->previous) throw std::logic_error("CudaGraph: capture outside an OnStream scope");
  impl_->graph = std::make_unique<at::cuda::CUDAGraph>();
  impl_->graph->capture_begin();
  try {
    fn();
  } catch (...) {
    try {
      impl_->graph->capture_end();
    } catch (...) {
    }
    impl_->graph.reset();
    throw;
  }
  impl_->graph->capture_end();
}

void CudaGraph::replay() {
  if (!impl_->graph) throw std::logic_error("CudaGraph: nothing captured");
  if (!impl_->previous) throw std::logic_error("CudaGraph: replay outside an OnStream scope");
  impl_->graph->replay();
  ++g_replays;
}

bool CudaGraph::captured() const { return impl_->graph != nullptr; }
void CudaGraph::reset() { impl_->graph.reset(); }

#else  // no CUDA: wanted() is false, nothing is ever captured

struct CudaGraph::Impl {};
CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;
bool CudaGraph::wanted(const c10::Device&) { return false; }
CudaGraph::OnStream::OnStream(CudaGraph& g) : g_(g) {
  throw std::logic_error("CudaGraph: built without CUDA");
}
CudaGraph::OnStream::~OnStream() = default;
void CudaGraph::capture(const std::function<void()>&) { throw std::logic_error("CudaGraph: built without CUDA"); }
void CudaGraph::replay() { throw std::logic_error("CudaGraph: built without CUDA"); }
bool CudaGraph::captured() const { return false; }
void CudaGraph::reset() {}

#endif

int64_t CudaGraph::replays() { return g_replays.load(); }

}  // namespace lf
