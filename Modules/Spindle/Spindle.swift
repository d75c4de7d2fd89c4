// `import Spindle` brings in every module and plugin.
@_exported import SpindleKernel
@_exported import SpindleEventLoop
@_exported import SpindleTasklets
@_exported import SpindleTaskQueue
@_exported import SpindleNodeEngine
@_exported import SpindleHostMesh
@_exported import SpindleRunner
@_exported import SpindleActors
@_exported import SpindleTCP
@_exported import SpindleProcessWorkers
