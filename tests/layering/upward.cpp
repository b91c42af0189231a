// Must NOT compile as part of the data layer: experiment is above data (CMakeLists.txt,
// test layering_upward_include_fails).
#include "experiment/config.h"
int layering_probe_upward() { return 0; }
