// The losses moved to dynamics/loss.h (frozen-kernel training in ntk/ needs them too). This
// forwarding header keeps branches that still include the old path building; deliberately
// nothing else. Remove it once no file includes "experiment/loss.h".
#pragma once
#include "dynamics/loss.h"
