"""Ray pattern: a supervisor actor manages a tree of worker actors."""

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote(num_cpus=0)
class Trainer:
    def __init__(self, hyperparameter, data):
        self.hyperparameter = hyperparameter
        self.data = data

    def fit(self):
        return self.data * self.hyperparameter


@ray.remote(num_cpus=0)
class Supervisor:
    def __init__(self, hyperparameter, data):
        self.trainers = [Trainer.remote(hyperparameter, d) for d in data]

    def fit(self):
        return ray.get([trainer.fit.remote() for trainer in self.trainers])


data = [1, 2, 3]
supervisor1 = Supervisor.remote(1, data)
supervisor2 = Supervisor.remote(2, data)
model1 = supervisor1.fit.remote()
model2 = supervisor2.fit.remote()
assert ray.get(model1) == [1, 2, 3]
assert ray.get(model2) == [2, 4, 6]
ray.kill(supervisor1)
ray.shutdown()
print("OK")
