// Progress of long work on stderr: on a terminal, one line rewritten in place at most 5 times
// a second; otherwise one quiet line at most every `quiet_every` seconds plus a last line.
// The caller supplies the fields (e.g. "step 1200  t 3.1e-2  loss 0.41  dt 1e-3  81 steps/s  ETA 2m").
#pragma once
#include <chrono>
#include <string>

namespace lf {

class Progress {
 public:
  explicit Progress(std::string label, bool enabled = true, double quiet_every = 60.0);
  ~Progress();
  // True when a line is due now (cheap to call every step).
  bool due() const;
  void update(const std::string& fields);  // prints if due
  void finish(const std::string& fields);  // always prints, ends the line
  double elapsed() const;                  // seconds since construction

 private:
  using clock = std::chrono::steady_clock;
  std::string label_;
  bool enabled_, tty_, open_ = false;
  double quiet_every_;
  clock::time_point start_, last_;
};

// "1.2e+03"-style compact number; "2m05s"-style durations.
std::string fmt_num(double x, int precision = 3);
std::string fmt_duration(double seconds);

}  // namespace lf
