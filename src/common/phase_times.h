// Where a loop's time goes, phase by phase: the engine marks the end of each phase of a step
// (mark), and the time between two consecutive marks is summed under the later one's name. On
// cuda a mark is a CUDA event on the current stream (the GPU's time between the two, idle gaps
// of a launch-bound loop included); on the CPU, where LibTorch's operations return when done, it
// is the host's clock. Spans: the batched engine's rounds (experiment/engine.cpp) and the
// stochastic dynamics' steps (experiment/train.cpp, with the grouped CNN engine's gradient inside
// them). For benchmarks (`lazyfeat bench ensemble --phases`): off unless enabled,
// and only between begin() and collect(), so that callers outside the timed loop cost nothing.
// A mark is a host call, so a CUDA graph's replay makes none: the engine leaves its graphs off
// while the timer is on (experiment/engine.cpp), and the times are those of its eager rounds.
// Cost: one event record a mark (a few us of launch), one host synchronisation a collect().
// One timer for the process: for one engine at a time (the bench's), not threads that each run one.
// Deliberately not: kernel-level times (Nsight Compute), nested phases, a test of speed.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lf {

class PhaseTimes {
 public:
  // Whether marks are recorded (set_enabled; off at the start: only the bench reads the totals).
  static bool enabled();
  static void set_enabled(bool on);
  // Starts a span on device d (a round of the engine): the next mark's phase begins here. Inside
  // a span not yet collected, the time since the last mark goes under kBetweenSpans.
  static void begin(const c10::Device& d);
  // The end of phase `name` (a string literal or one that outlives collect()), inside a span.
  static void mark(const char* name);
  // Waits for the marks since the first uncollected begin() and adds their times to the totals
  // (a host synchronisation: once per call of the engine's rounds, not per round).
  static void collect();
  static constexpr const char* kBetweenSpans = "between rounds";
  struct Phase {
    std::string name;
    double ms = 0;      // summed over the spans
    int64_t count = 0;  // marks
  };
  // The totals since the last reset, phases in the order first seen; spans() counts begin()s.
  static std::vector<Phase> totals();
  static int64_t spans();
  static void reset();
};

}  // namespace lf
