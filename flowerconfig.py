"""Flower's settings for a motion deployment, read by ``celery -A workers flower`` started
in this directory (Flower's default ``--conf=flowerconfig.py``; elsewhere pass
``--conf=/path/to/flowerconfig.py`` or set ``FLOWER_TASKS_COLUMNS``).
"""

# The task list shows each wake-up's arguments (component, instance, the flow and seq
# that woke it), its result (which flows it applied) and a failed drain's error; Flower's
# default columns show none of them.
tasks_columns = "name,uuid,state,args,result,exception,received,runtime,worker"
