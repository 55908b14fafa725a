"""Type aliases of the vectorized engine: a length, batch or time may be one number or a numpy array."""

from __future__ import annotations

import numpy as np

# one number, or an array of them (a sweep evaluates many lengths or batches at once; numpy broadcasts)
Num = int | float | np.ndarray
