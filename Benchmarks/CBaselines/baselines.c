#include "cbaselines.h"
