"""Motion's ``motion.server`` package: only its ``application`` import path lives here."""
