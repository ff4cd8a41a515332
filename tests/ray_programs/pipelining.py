"""Ray pattern: pipelining, a worker actor asks for the next work item before processing
the current one."""

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
class WorkQueue:
    def __init__(self):
        self.queue = list(range(10))

    def get_work_item(self):
        return self.queue.pop(0) if self.queue else None


@ray.remote
class WorkerWithPipelining:
    def __init__(self, work_queue):
        self.work_queue = work_queue
        self.done = []

    def process(self, work_item):
        self.done.append(work_item * 2)

    def run(self):
        self.work_item_ref = self.work_queue.get_work_item.remote()
        while True:
            work_item = ray.get(self.work_item_ref)
            if work_item is None:
                break
            self.work_item_ref = self.work_queue.get_work_item.remote()
            self.process(work_item)
        return self.done


worker = WorkerWithPipelining.remote(WorkQueue.remote())
assert ray.get(worker.run.remote()) == [2 * i for i in range(10)]
ray.shutdown()
print("OK")
