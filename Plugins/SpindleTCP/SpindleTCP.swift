import SpindleKernel
// SpindleTCP: content arrives with its issue.
