"""Solved exercises, for tutors: same file names and signatures as exercises/."""
