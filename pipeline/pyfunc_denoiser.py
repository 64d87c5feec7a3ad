"""A trained hinas network as an MLflow model ("models from code"): never imported by hinas.

MLflow runs this file when it loads the model (``mlflow.pyfunc.load_model(uri)``); hinas only
hands its path to ``mlflow.pyfunc.save_model`` (:func:`.mlflow_tracking.log_denoiser`). The
model's one artifact is the weights-only model file the retrain stage wrote, read with
:func:`hinas_core.models.load_model` (``torch.load(weights_only=True)``): nothing is pickled,
neither the network nor this class.

``predict(noisy)``: ``noisy`` a float32 array ``(B, C, H, W)`` in [0, 1] (C = the model's
channels, 1 for gray); returns the denoised ``(B, C, H, W)`` float32 in [0, 1].
"""
import mlflow
import numpy as np


class Denoiser(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from hinas_core.inference import fold_batchnorm
        from hinas_core.models import load_model

        model, self.spec, self.meta = load_model(context.artifacts["weights"])
        self.model = fold_batchnorm(model.eval())

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        # An ndarray hint: MLflow then checks the input against the logged signature only, and
        # no longer warns that predict has no type hints.
        import torch

        x = torch.from_numpy(np.asarray(model_input, dtype=np.float32))
        if x.dim() != 4:
            raise ValueError(f"expected noisy images as (B, C, H, W), got shape {tuple(x.shape)}")
        with torch.inference_mode():
            return self.model(x).clamp(0, 1).numpy()


mlflow.models.set_model(Denoiser())
