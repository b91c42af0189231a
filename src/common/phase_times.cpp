#include "common/phase_times.h"

#include <chrono>
#include <deque>
#include <mutex>

#ifdef LAZYFEAT_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lf {
namespace {

using Clock = std::chrono::steady_clock;

struct Mark {
  const char* name;  // nullptr: the span's start
  Clock::time_point host;
  size_t event;  // cuda: into State::events
};

struct State {
  std::mutex mu;
  bool on = false, active = false, cuda = false;
  std::vector<Mark> marks;
#ifdef LAZYFEAT_WITH_CUDA
  std::deque<at::cuda::CUDAEvent> events;  // a pool, reused span after span (stable addresses)
#endif
  std::vector<PhaseTimes::Phase> totals;
  int64_t spans = 0;
};

// Never destroyed: its CUDA events would otherwise be destroyed after the CUDA runtime has
// unloaded at the process's exit ("driver shutting down", an abort; seen on the H100, 2026-12-07).
State& state() {
  static State* s = new State;
  return *s;
}

void record(State& s, const char* name) {
  Mark m{name, Clock::now(), 0};
#ifdef LAZYFEAT_WITH_CUDA
  if (s.cuda) {
    m.event = s.marks.size();
    while (s.events.size() <= m.event) s.events.emplace_back(cudaEventDefault);  // timing on
    s.events[m.event].record(c10::cuda::getCurrentCUDAStream());
  }
#endif
  s.marks.push_back(m);
}

}  // namespace

bool PhaseTimes::enabled() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  return s.on;
}

void PhaseTimes::set_enabled(bool on) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.on = on;
}

void PhaseTimes::begin(const c10::Device& d) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (!s.on) return;
  ++s.spans;
  if (s.active) {  // the next span of the same collect: the time since the last mark is the gap's
    record(s, kBetweenSpans);
    return;
  }
  s.marks.clear();
  s.active = true;
#ifdef LAZYFEAT_WITH_CUDA
  s.cuda = d.is_cuda();
#else
  (void)d;
  s.cuda = false;
#endif
  record(s, nullptr);
}

void PhaseTimes::mark(const char* name) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (s.active) record(s, name);
}

void PhaseTimes::collect() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  if (!s.active) return;
  s.active = false;
#ifdef LAZYFEAT_WITH_CUDA
  if (s.cuda && !s.marks.empty()) s.events[s.marks.back().event].synchronize();
#endif
  for (size_t i = 1; i < s.marks.size(); ++i) {
    const Mark &a = s.marks[i - 1], &b = s.marks[i];
    double ms = std::chrono::duration<double, std::milli>(b.host - a.host).count();
#ifdef LAZYFEAT_WITH_CUDA
    if (s.cuda) ms = double(s.events[a.event].elapsed_time(s.events[b.event]));
#endif
    auto it = s.totals.begin();
    while (it != s.totals.end() && it->name != b.name) ++it;
    if (it == s.totals.end()) it = s.totals.insert(it, Phase{b.name, 0.0, 0});
    it->ms += ms, it->count += 1;
  }
  s.marks.clear();
}

std::vector<PhaseTimes::Phase> PhaseTimes::totals() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  return s.totals;
}

int64_t PhaseTimes::spans() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  return s.spans;
}

void PhaseTimes::reset() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.totals.clear(), s.spans = 0;
}

}  // namespace lf
