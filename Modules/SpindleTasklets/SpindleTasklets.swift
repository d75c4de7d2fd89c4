import SpindleKernel
// SpindleTasklets: content arrives with its issue (see docs/).
