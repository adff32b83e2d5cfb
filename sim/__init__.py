"""Where the hardware and the golden model meet: simulation runner and stream drivers.

``sim.runner.run_cocotb`` turns an Amaranth component into Verilog and runs cocotb tests on it;
``sim.streams`` drives and monitors ``amaranth.lib.stream`` ports in those tests.
"""
