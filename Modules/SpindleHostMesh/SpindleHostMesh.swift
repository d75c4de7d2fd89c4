import SpindleKernel
// SpindleHostMesh: content arrives with its issue (see docs/).
