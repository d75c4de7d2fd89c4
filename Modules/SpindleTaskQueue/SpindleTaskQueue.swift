import SpindleKernel
// SpindleTaskQueue: content arrives with its issue (see docs/).
