"""What goes in and out of each step: dspy.Signature classes, no logic."""
