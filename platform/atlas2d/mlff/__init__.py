"""Force-field adapters (M3GNet through matgl, MACE through mace-torch): training,
model files, ASE calculators, relaxation engines and a batch API. Nothing here touches
the database or calls a service; ``atlas2d.load`` gives a registered model's calculator."""
