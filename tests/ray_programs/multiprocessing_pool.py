"""Ray utility: ray.util.multiprocessing.Pool as a drop-in multiprocessing.Pool."""

import actorlib as ray
from actorlib.util.multiprocessing import Pool

ray.init(num_cpus=2)


def f(index):
    return index * index


with Pool(2) as pool:
    assert pool.map(f, range(20)) == [i * i for i in range(20)]
    assert sorted(pool.imap_unordered(f, range(5))) == [0, 1, 4, 9, 16]
    assert pool.apply(f, (7,)) == 49
    assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
ray.shutdown()
print("OK")
