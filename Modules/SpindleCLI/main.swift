import Spindle
print("spindle: commands arrive with the host mesh issue")
