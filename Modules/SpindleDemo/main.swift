import Spindle
print("spindle-demo: the integrated demo arrives with the module issues")
