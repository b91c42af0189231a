// Kernel measurements recorded with a run (protocol sections 4, 5): the NTK at initialisation
// and at the end on the first kernel_points test points, their Frobenius norms and relative
// change, and frozen-kernel (linearised) training with the kernel at init / at the end.
// Called by the trainer (experiment/train.cpp) when --delta-kernel, --init-kernel or
// --final-kernel is set; results go into RunResult::kernel.
#pragma once
#include <nlohmann/json.hpp>

#include <vector>

#include "ntk/ntk.h"

namespace lf {

struct RunConfig;
struct Dataset;

// Whether cfg asks for any kernel measurement (--delta-kernel, --init-kernel, --final-kernel).
bool wants_kernels(const RunConfig& cfg);

// Every architecture: the network as a Net (ntk/ntk.h), e.g. Net::cnn(params, activation_of(cfg))
// or Net::wrn(...), on any device and dtype (the kernels are taken in float64 on cfg.device).
// Before training, at w0. Returns a state the end-of-training call completes, e.g.
// {"init": {"frobenius":..,"mean":..,"trace":..}, "init_kernel_run": {"test_err":..,"t2":..}}.
nlohmann::json measure_kernels_at_init(const RunConfig& cfg, const Dataset& data, const Net& w0);
// The same for several runs that share their kernel options (an ensemble's new members): the
// kernels on the test points of all of them in one computation (ntk_members: FC batched over
// the members). Results in the order of cfgs.
std::vector<nlohmann::json> measure_kernels_at_init(const std::vector<RunConfig>& cfgs, const Dataset& data,
                                                    const std::vector<Net>& w0s);
// After training, at w (w0 given again: Theta(w0) is recomputed rather than held, with Theta(w) in
// one ntk_members call); adds "final", "change" (||Theta_end - Theta_0|| / ||Theta_0||) and
// "final_kernel_run" as the options ask. `at_init` is what measure_kernels_at_init returned.
nlohmann::json measure_kernels_at_end(const RunConfig& cfg, const Dataset& data, const Net& w0, const Net& w,
                                      const nlohmann::json& at_init);

}  // namespace lf
