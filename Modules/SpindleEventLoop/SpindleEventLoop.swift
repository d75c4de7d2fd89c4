import SpindleKernel
// SpindleEventLoop: content arrives with its issue (see docs/).
