"""Ray example: a word count with map and reduce tasks (num_returns per mapper)."""

import collections

import actorlib as ray

ray.init(num_cpus=4)

TEXT = "the quick brown fox jumps over the lazy dog " * 20 + "ray actor task object " * 5
CORPUS = TEXT.split()
NUM_PARTITIONS = 3


@ray.remote
def apply_map(words, num_partitions):
    mapped = [[] for _ in range(num_partitions)]
    for word in words:
        mapped[sum(map(ord, word)) % num_partitions].append((word, 1))
    return mapped


@ray.remote
def apply_reduce(*results):
    counts = collections.Counter()
    for res in results:
        for word, one in res:
            counts[word] += one
    return dict(counts)


chunks = [CORPUS[i::4] for i in range(4)]
map_results = [apply_map.options(num_returns=NUM_PARTITIONS).remote(chunk, NUM_PARTITIONS)
               for chunk in chunks]
outputs = [apply_reduce.remote(*[mapper[j] for mapper in map_results])
           for j in range(NUM_PARTITIONS)]
total = {}
for partial in ray.get(outputs):
    assert not set(partial) & set(total)
    total.update(partial)
assert total == dict(collections.Counter(CORPUS)), total
ray.shutdown()
print("OK")
