# Solution 00, exercise 3: two heads, two best parameter sets, and what sharing one set costs.
import numpy as np

from hccs_lab.capture import example_row
from hccs_lab.widgets.start_here import StartHere

# One int8 step of 0.06 logit units for both rows, as if both heads shared a quantization scale.
labs = {
    "layer 0 head 5": StartHere(example_row(layer=0, head=5, query=4), scale=0.06),
    "layer 3 head 8": StartHere(example_row(layer=3, head=8, query=4), scale=0.06),
}
best = {name: lab.search() for name, lab in labs.items()}
for name, lab in labs.items():
    p = lab.p_softmax
    entropy = float(-(p * np.log(p)).sum())
    print(f"{name}: entropy {entropy:.2f} nats, spread {-lab.logits.min():.1f} -> best {best[name].params}, "
          f"KL {best[name].kl:.4f}")
(a, lab_a), (b, lab_b) = labs.items()
for mine, other in [(a, b), (b, a)]:
    P = best[other].params
    shared = labs[mine].evaluate(P.B, P.S, P.D)
    print(f"{mine} with the parameters of {other}: KL {shared.kl:.4f} (own best {best[mine].kl:.4f})")
    # the other head's parameters are a point of the same grid, so they can never beat the own optimum
    assert shared.kl >= best[mine].kl - 1e-12
# The broader head (higher entropy) wants a longer line (larger D, gentler S): one global set
# would be a compromise for both, which is why HCCS calibrates every head.
