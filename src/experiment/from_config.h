// A run's options (RunConfig) translated into the small option structs of the layers below
// experiment: data (DataOptions), models (Activation), ntk (FrozenOptions). The lower layers
// never see a RunConfig; this file is the one place that knows both sides.
// Deliberately not: validation (config.h's finalize), anything that trains.
#pragma once
#include "data/dataset.h"
#include "experiment/config.h"
#include "models/activation.h"
#include "ntk/frozen.h"

namespace lf {

DataOptions data_options(const RunConfig& cfg);
// load_dataset(data_options(cfg)).
Dataset load_dataset(const RunConfig& cfg);
// The run's activation, its scale given by --act-scale or the normalising constant.
Activation activation_of(const RunConfig& cfg);
// alpha, the loss, tau, df_min/df_max, dt0, max_dt and the budgets of a finalized config.
FrozenOptions frozen_options(const RunConfig& cfg);

}  // namespace lf
