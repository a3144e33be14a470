"""Pictures of runs: PNG plots, an HTML report, a Rerun recording, the map as PLY and PNG
(:func:`visualize_run`), and several runs side by side (:func:`compare_runs`). ``RerunStream`` streams a
running estimator to a Rerun viewer.
"""

from slam.viz.compare import CompareResult, compare_runs
from slam.viz.rerun_view import RerunStream
from slam.viz.run_data import RunData, load_run
from slam.viz.visualize import VizResult, visualize_run

__all__ = ["CompareResult", "RerunStream", "RunData", "VizResult", "compare_runs", "load_run", "visualize_run"]
