# Solution 00, exercise 1: a hand-found setting below KL 0.3, then the brute-force optimum.
from hccs_lab.capture import example_row
from hccs_lab.widgets.start_here import StartHere

lab = StartHere(example_row())
start = lab.evaluate(lab.params.B, lab.params.S, lab.params.D)
# Dragging from the default (B=1536, S=16, D=64): the clipped keys keep B - S*D = 512, a quarter of the
# base, far more than softmax gives them. Raising the slope until the line nearly reaches 0 at the clip
# (S*D close to B) is what brings KL down.
by_hand = lab.evaluate(1536, 24, 64)
best = lab.search()
print(f"default {start.params}: KL = {start.kl:.4f}")
print(f"by hand {by_hand.params}: KL = {by_hand.kl:.4f}")
print(f"search  {best.params}: KL = {best.kl:.4f}")
assert by_hand.kl < 0.3 < start.kl
assert best.kl <= by_hand.kl
# The optimum uses the largest base the row length allows (n*B <= 32767): a larger B gives the
# integer reciprocal 32767 // sum(s) more precision. B was the parameter left furthest away.
print("largest distance from the optimum:",
      max(("B", abs(best.params.B - by_hand.params.B)), ("S", abs(best.params.S - by_hand.params.S)),
          ("D", abs(best.params.D - by_hand.params.D)), key=lambda t: t[1]))
