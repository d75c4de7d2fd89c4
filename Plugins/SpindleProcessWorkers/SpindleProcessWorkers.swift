import SpindleKernel
// SpindleProcessWorkers: content arrives with its issue.
