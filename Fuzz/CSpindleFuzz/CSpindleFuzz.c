#include "CSpindleFuzz.h"
