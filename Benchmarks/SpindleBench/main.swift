import Spindle
import CBaselines
print("spindle-bench: suites arrive with their issues")
