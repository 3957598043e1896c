"""The task registry: registering a task checks its declared facts and publishes its targets and
label files to the data layer (data/targets.py)."""
from perception_mtl.data.targets import publish
from perception_mtl.registry import Registry


class TaskRegistry(Registry):
    def register(self, name: str):
        add = super().register(name)

        def check_and_add(cls):
            if cls.name != name:
                raise ValueError(f"task class {cls.__name__} is registered as '{name}' but names itself '{cls.name}'")
            cls.check_spec()
            publish(name, cls.targets, cls.files)
            return add(cls)

        return check_and_add


TASKS: TaskRegistry = TaskRegistry("task")
