"""Ray's "Serialization": numpy arrays come back read-only (zero-copy), refs nested in
arguments stay refs, a class made serializable with __reduce__ or with
ray.util.register_serializer, and ray.util.inspect_serializability finding what cannot be
pickled."""

import io
import threading

import numpy as np

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote
def echo(x):
    return x


@ray.remote
def name_of(h):
    return h.name


@ray.remote
def first_item(lst):
    return ray.get(lst[0]) + 1  # a ref inside a list arrives as a ref


# Zero-copy: a numpy array read from the object store is read-only. (1 MB: actorlib
# copies arrays under 64 KiB inline, so those come back writable; docs/ray-compatibility.md.)
arr = ray.get(ray.put(np.arange(125_000)))
print("writeable:", arr.flags.writeable)
try:
    arr[0] = 1
except ValueError:
    print("assignment refused: the array is read-only")
arr = arr.copy()  # the documented fix: copy it to write
arr[0] = 1
print("copy:", arr[:3].tolist())

# A top-level ref argument is resolved; one nested in a list is passed as a ref.
ref = ray.put(41)
print("top level:", ray.get(echo.remote(ref)))
print("nested:", type(ray.get(echo.remote([ref]))[0]).__name__)
print("nested, fetched inside:", ray.get(first_item.remote([ref])))


class Connection:
    """Holds a lock, which pickle refuses: __reduce__ says how to make it again."""

    def __init__(self, address):
        self.address = address
        self.lock = threading.Lock()

    def __reduce__(self):
        return (Connection, (self.address,))


print("via __reduce__:", ray.get(echo.remote(Connection("db:5432"))).address)


class Handle:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()


def serialize_handle(h):
    return h.name


def deserialize_handle(name):
    return Handle(name)


ray.util.register_serializer(
    Handle, serializer=serialize_handle, deserializer=deserialize_handle
)
# The serializer is registered in this process: the task gets the Handle it rebuilds
# (the deserializer travels with the bytes), and returns a plain value.
print("via register_serializer:", ray.get(name_of.remote(Handle("h1"))))
print("put and get here:", ray.get(ray.put(Handle("h2"))).name)
ray.util.deregister_serializer(Handle)

lock = threading.Lock()


def uses_lock():
    with lock:
        return 1


report = io.StringIO()  # the printed search is prose (Ray's and actorlib's differ)
ok, failures = ray.util.inspect_serializability(uses_lock, name="uses_lock",
                                                print_file=report)
print("serializable:", ok, [f.path[-1] for f in failures])
print("found:", [type(f.obj).__name__ for f in failures], "in", failures.pop().parent.__name__)
ok, _ = ray.util.inspect_serializability(echo, name="echo", print_file=report)
print("echo serializable:", ok)
ray.shutdown()
print("OK")
