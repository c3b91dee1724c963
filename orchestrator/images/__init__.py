"""Container images for jobs.

``local`` builds manylinux-compatible images on this host from a debootstrap root
(``orch images build-local``); ``definition`` names them by the hash of their definition
(``images/local/``); ``rootfs`` makes and caches the debootstrap tarballs; ``pull`` makes a
job's image present.
"""
