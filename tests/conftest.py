"""8 virtual CPU devices, set before jax is imported, so sharding code is tested
without hardware. Tests that do not ask for a mesh use 1 device."""
import os
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
