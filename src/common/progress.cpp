#include "common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace lf {

Progress::Progress(std::string label, bool enabled, double quiet_every)
    : label_(std::move(label)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      quiet_every_(quiet_every),
      start_(clock::now()),
      last_(start_) {}

Progress::~Progress() {
  if (open_) std::cerr << "\n";
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(clock::now() - start_).count();
}

bool Progress::due() const {
  if (!enabled_) return false;
  double since = std::chrono::duration<double>(clock::now() - last_).count();
  return since >= (tty_ ? 0.2 : quiet_every_);
}

void Progress::update(const std::string& fields) {
  if (!due()) return;
  last_ = clock::now();
  if (tty_) {
    std::cerr << "\r\033[K" << label_ << "  " << fields << std::flush;
    open_ = true;
  } else {
    std::cerr << label_ << "  " << fields << "\n" << std::flush;
  }
}

void Progress::finish(const std::string& fields) {
  if (!enabled_) return;
  if (tty_) std::cerr << "\r\033[K";
  std::cerr << label_ << "  " << fields << "\n" << std::flush;
  open_ = false;
}

std::string fmt_num(double x, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, x);
  return buf;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[64];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

}  // namespace lf
