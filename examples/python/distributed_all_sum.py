# A distributed all_sum, as in MLX's distributed guide. Alone it is a group of one; on N ranks:
#   oxmx launch -n 2 -- python3 examples/python/distributed_all_sum.py
import oxmx.core as mx

world = mx.distributed.init()
x = mx.distributed.all_sum(mx.ones(10))
print(world.rank(), x)
