"""The MLflow pyfunc of every registered model: user ids in, top-k unseen items out.

The artifact is a model bundle (``fitmm_core.bundle``): the model is rebuilt from its config and a
safetensors state dict, so nothing is pickled. Load it with
``mlflow.pyfunc.load_model("models:/fitmm-demo@champion")`` and call ``predict`` on a DataFrame with
a ``user_id`` column (contiguous ids, see the dataset's ``u_id_mapping.csv``); the inference
parameter ``k`` sets the list length: ``predict(frame, params={"k": 5})`` (default 10).
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

BUNDLE_ARTIFACT = "bundle"
DEFAULT_K = 10


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Rebuilds a bundle on CPU and answers with one row per (user, rank)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from fitmm_core.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from fitmm_core.bundle import recommend

        if "user_id" not in model_input.columns:
            raise ValueError(f"input needs a 'user_id' column; got columns {list(model_input.columns)}")
        k = int((params or {}).get("k", DEFAULT_K))
        users = model_input["user_id"].to_numpy()
        items, scores = recommend(self.bundle, users, k)
        n_users, width = items.shape
        return pd.DataFrame(
            {
                "user_id": users.repeat(width),
                "rank": list(range(1, width + 1)) * n_users,
                "item_id": items.ravel(),
                "asin": [self.bundle.item_ids[i] for i in items.ravel()],
                "score": scores.ravel(),
            }
        )
