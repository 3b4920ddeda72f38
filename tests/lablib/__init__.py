"""Python helpers of the test lab (tests/lab/labctl): testinfra hosts and the lab's LRS."""
