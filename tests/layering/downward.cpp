// Compiles as part of the data layer: common and dynamics are below it (the control of
// layering_upward_include_fails).
#include "common/error.h"
#include "dynamics/momentum.h"
#include "data/pca.h"
int layering_probe_downward() { return lf::Momentum{}.enabled() ? 1 : 0; }
