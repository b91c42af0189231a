#include "experiment/run_state.h"

#include "common/error.h"
#include "experiment/observables.h"
#include "experiment/state.h"

namespace lf {

std::string RunState::encode(const RunConfig& cfg, const NetLayout& lay) const {
  TrainState s;
  s.header = {{"format", "lazyfeat-train-state"}, {"version", 3}, {"config_hash", config_hash(cfg)},
              {"n", int64_t(f.size())}, {"pte", f0_test.numel()},
              {"step", step}, {"rejected", rejected}, {"next_ckpt", next_ckpt}, {"last_ckpt", last_ckpt},
              {"kernel_init", kernel_init}, {"trainer", trainer}};
  const nlohmann::json shape = lay.shape();  // arch, and d, h, L or channels, h
  for (const auto& [k, v] : shape.items()) s.header[k] = v;
  if (batch_rng.defined()) {
    s.tensors["batch_rng"] = batch_rng;
    s.header["walked"] = walked;
  }
  if (!zdot.empty()) s.header["zdot"] = zdot;
  s.header["gradient_evaluations"] = gradient_evaluations;
  s.tensors["dt_prev"] = to_tensor({dt_prev});
  if (!f_prev.empty()) s.tensors["f_prev"] = to_tensor(f_prev);
  if (g_prev.defined()) {
    s.tensors["g_prev"] = g_prev;
    s.tensors["eab2"] = to_tensor({crossed_last ? 1.0 : 0.0});
  }
  s.tensors["w"] = w.detach();
  s.tensors["v"] = v;
  s.tensors["g"] = g;
  s.tensors["f"] = to_tensor(f);
  s.tensors["f0"] = to_tensor(f0);
  s.tensors["f0_test"] = f0_test;
  s.tensors["scalars"] = to_tensor({t, dt, t1, t2, wall});
  return s.encode();
}

RunState RunState::decode(const std::string& bytes, const RunConfig& cfg, int64_t n, int64_t pte,
                          at::TensorOptions opts) {
  TrainState s = TrainState::decode(bytes);
  const auto& hd = s.header;
  require(hd.value("version", 0) >= 1 && hd.value("version", 0) <= 3, "training state: unknown format version");
  require(hd.value("config_hash", "") == config_hash(cfg), "the saved training state belongs to another run configuration");
  require(hd.at("n").get<int64_t>() == n && hd.at("pte").get<int64_t>() == pte,
          "the saved training state was made on another dataset size");
  RunState r;
  r.w = s.tensor("w").to(opts);
  r.v = s.tensor("v").to(opts);
  r.g = s.tensor("g").to(opts);
  if (s.tensors.count("w0")) r.w0 = s.tensor("w0").to(opts);  // versions 1, 2; since 3 the seed makes it
  r.f = to_vector(s.tensor("f"));
  r.f0 = to_vector(s.tensor("f0"));
  r.f0_test = s.tensor("f0_test").clone();
  const auto sc = to_vector(s.tensor("scalars"));  // t, dt, t1, t2, wall
  r.t = sc.at(0);
  r.dt = sc.at(1);
  r.t1 = sc.at(2);
  r.t2 = sc.at(3);
  r.wall = sc.at(4);
  r.step = hd.at("step").get<int64_t>();
  r.rejected = hd.at("rejected").get<int64_t>();
  r.next_ckpt = hd.at("next_ckpt").get<int64_t>();
  r.last_ckpt = hd.at("last_ckpt").get<int64_t>();
  r.kernel_init = hd.value("kernel_init", nlohmann::json());
  if (hd.contains("zdot")) r.zdot = hd["zdot"].get<std::vector<double>>();
  r.trainer = hd.value("trainer", "");
  if (hd.contains("gradient_evaluations")) {
    r.gradient_evaluations = hd.at("gradient_evaluations").get<int64_t>();
    r.dt_prev = to_vector(s.tensor("dt_prev")).at(0);
    if (s.tensors.count("f_prev")) r.f_prev = to_vector(s.tensor("f_prev"));
    if (s.tensors.count("g_prev")) {
      r.g_prev = s.tensor("g_prev").to(opts);
      r.crossed_last = to_vector(s.tensor("eab2")).at(0) != 0.0;
    }
  } else {  // version 1: one backward at w0 and one after each accepted step of a run in progress
    r.gradient_evaluations = r.step + 1;
  }
  if (s.tensors.count("batch_rng")) r.batch_rng = s.tensor("batch_rng").clone();
  r.walked = hd.value("walked", int64_t(0));  // absent before the walk's first chunk followed it
  require(!cfg.stochastic() || r.batch_rng.defined(), "the saved training state has no batch generator state");
  require(cfg.integrator != "eab2" || r.g_prev.defined(), "the saved training state has no eab2 gradient history");
  return r;
}

Net net_from_state(const std::string& bytes, const Activation& act) {
  TrainState s = TrainState::decode(bytes);
  const NetLayout lay = NetLayout::of_shape(s.header);  // arch and its shape
  at::Tensor w = s.tensor("w").to(at::kDouble);
  require(w.dim() == 1 && w.numel() == lay.size(), "training state: weights of the wrong size");
  return lay.net(w.clone(), act);
}

FCParams fc_params_from_state(const std::string& bytes) {
  TrainState s = TrainState::decode(bytes);
  require(s.header.value("arch", "fc") == "fc",
          "the training state is of a " + s.header.value("arch", std::string("?")) + " network, not an fc one");
  return std::get<FCParams>(net_from_state(bytes, Activation()).params);
}

}  // namespace lf
