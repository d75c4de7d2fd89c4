import SpindleKernel
// SpindleNodeEngine: content arrives with its issue (see docs/).
