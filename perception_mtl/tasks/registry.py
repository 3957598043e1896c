"""The task registry: registering a task checks its declared facts and publishes its targets,
label files and the task whose labels it reads to the data layer (data/targets.py), and its config
keys to the schema (config.py)."""
from perception_mtl.core.config import publish_task_config
from perception_mtl.data.targets import publish
from perception_mtl.core.registry import Registry


class TaskRegistry(Registry):
    def register(self, name: str):
        add = super().register(name)

        def check_and_add(cls):
            if cls.name != name:
                raise ValueError(f"task class {cls.__name__} is registered as '{name}' but names itself '{cls.name}'")
            cls.check_spec()
            publish(name, cls.targets, cls.files, cls.reads)
            if cls.Config is not None:
                publish_task_config(name, cls.Config)
            return add(cls)

        return check_and_add


TASKS: TaskRegistry = TaskRegistry("task")
