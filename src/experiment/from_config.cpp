#include "experiment/from_config.h"

#include "common/error.h"

namespace lf {

DataOptions data_options(const RunConfig& cfg) {
  DataOptions o;
  o.dataset = cfg.dataset;
  o.data_dir = cfg.data_dir.empty() ? default_data_dir() : cfg.data_dir;
  o.ptr = cfg.ptr;
  o.pte = cfg.pte;
  o.pca = cfg.pca < 0 ? (cfg.arch == "fc" ? 10 : 0) : cfg.pca;
  o.pca_train_only = cfg.pca_train_only;
  o.pca_solver = pca_solver_from_name(cfg.pca_solver);
  o.images = cfg.arch != "fc";
  o.seed_data = cfg.seed_data;
  return o;
}

Dataset load_dataset(const RunConfig& cfg) { return load_dataset(data_options(cfg)); }

Activation activation_of(const RunConfig& cfg) {
  return Activation::make(cfg.act, cfg.softplus_beta, cfg.act_scale, cfg.softplus_threshold);
}

FrozenOptions frozen_options(const RunConfig& cfg) {
  FrozenOptions o;
  o.alpha = cfg.alpha;
  o.loss = Loss::make(cfg.loss);
  o.momentum.tau = cfg.tau;
  o.control.dt = cfg.dt0;  // protocol section 4: dt starts at 1e-50 (full batch)
  o.control.df_min = cfg.df_min;
  o.control.df_max = cfg.df_max;
  o.control.max_dt = cfg.max_dt;
  o.lte = cfg.integrator == "lte";
  o.lte_control.tol = cfg.integrator_tol;
  o.lte_control.max_dt = cfg.max_dt;
  o.eab2 = cfg.integrator == "eab2";
  o.eab2_control.tol = cfg.integrator_tol;
  o.eab2_control.max_dt = cfg.max_dt;
  o.max_steps = cfg.max_steps;
  o.max_wall = cfg.max_wall;
  return o;
}

}  // namespace lf
