import SpindleKernel
// SpindleRunner: content arrives with its issue (see docs/).
