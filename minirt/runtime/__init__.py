"""Policy: turning a ContainerSpec into a running, isolated process."""
