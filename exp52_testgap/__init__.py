"""§5.2: test-set inference gaps on MNIST and Fashion-MNIST for ffg, flow and cflow."""
