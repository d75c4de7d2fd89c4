// The declarations in include/CSpindleAEAD.h resolve against swift-crypto's BoringSSL at link
// time; this file only gives the target a translation unit.
#include "CSpindleAEAD.h"
